"""What the ``backend.Backend`` does, one concern per module (settings, voices, models, books, renders,
review, cast, queue). Each function takes the Backend first; ``Backend`` lists them as its methods, so
the page and the command line keep one door. Nothing here imports ``backend.py``.
"""
