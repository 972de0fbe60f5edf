"""The pure core: no I/O, so every rule here can be tested exhaustively."""
