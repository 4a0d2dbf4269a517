"""The `adapters` command line: parse, call the client, print."""
