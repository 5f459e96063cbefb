"""The server's side of the privacy modes: the strategy wrappers they name."""
