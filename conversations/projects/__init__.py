"""Projects: their pages (views), forms and admin. The model is models/projects.py; what a
project adds to a request (its instructions and files) is in generation/sending.py and
files/context.py."""
