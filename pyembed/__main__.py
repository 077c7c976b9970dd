from pyembed.cli.main import main

main()
