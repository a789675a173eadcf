from jobforge.cli import main

main()
