"""Model providers behind one boundary, the only code that imports `openai`: chat (live calls,
typed results and errors), batch (Files and Batches), and sandbox, the offline upstream for
development and tests."""
