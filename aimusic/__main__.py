from aimusic.cli import main

main()
