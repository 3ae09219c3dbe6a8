"""`manage.py replicate_emulator`: run the local Replicate stand-in (same flags as `python -m replicate_emulator`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from replicate_emulator import cli


class Command(BaseCommand):
    help = (
        "Run a local emulator of the Replicate HTTP API (predictions, files, signed webhooks, data retention) "
        "with optional fault injection. Point the service at the printed REPLICATE_BASE_URL and token."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        cli.one_line_errors(parser)
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cli.serve(options, out=self.stdout)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
