"""Files: uploads, their text, and what answers grounded in them need (views, processing,
search, context, embeddings). `extraction` imports nothing of Django: worker processes run it."""
