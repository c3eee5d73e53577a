"""The ``collab`` subcommands (``analysis.cli`` is the entry point): the parser, the commands
that train, and the commands that read and show runs. Each command imports what it needs when
it runs, so ``collab --help`` and ``collab app`` start without torch."""
