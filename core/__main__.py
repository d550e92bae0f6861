from mamakit.cli import entry

entry()
