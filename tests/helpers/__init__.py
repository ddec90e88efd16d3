"""Test helpers shared by the test modules (``tests/`` is on ``sys.path`` through pytest's ``pythonpath``).

Test modules import helpers from here, never from each other or from ``conftest.py``:
``data`` writes small real datasets and images, ``hub`` is the one fake Hugging Face Hub,
``jobs`` runs a real ``dataigm`` command in a subprocess and kills it mid-run.
"""
