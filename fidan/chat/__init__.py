"""Chat with an instruction-tuned model: a session that keeps history, and the terminal REPL."""
