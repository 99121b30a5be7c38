"""Chat with an instruction-tuned model: a session that keeps history (``repl.ChatSession``) and the
terminal REPL behind ``fidan chat`` (``fidan.chat(...)`` in Python)."""
