from rolechain.cli import main

main()
