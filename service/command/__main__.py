"""`python -m service.command` is `relight`."""

from service.command.main import main

main()
