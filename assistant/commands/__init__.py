"""The ``assistant`` command's subcommands, one module per area (``assistant.cli`` parses the
arguments and imports the module a command needs when it runs)."""
