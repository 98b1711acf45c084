"""``python -m gateway.app``: the ``gateway`` command."""

from gateway.app.commands import main

main()
