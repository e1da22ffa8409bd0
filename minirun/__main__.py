from minirun.cli import main

main()
