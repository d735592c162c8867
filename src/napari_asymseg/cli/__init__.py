"""The ``asymseg`` command: parser, commands, options from the config schema, the headless demo."""
