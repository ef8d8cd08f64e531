from regtool.cli.app import main

main()
