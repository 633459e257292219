"""``python -m ostraca.server run|migrate``: the operator commands without the client CLI."""

from .cli import server_app

server_app(prog_name="ostraca server")
