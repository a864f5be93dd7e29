"""SoundStream-style neural audio codec: SEANet encoder/decoder, residual VQ, training."""
