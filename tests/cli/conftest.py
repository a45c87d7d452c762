"""The command-line layer: ``attnlab`` run in process with typer's runner."""
