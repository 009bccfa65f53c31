"""Training scripts (train.py, restore.py, validate.py, weight_avg.py) and the modules they share,
installed as ``cnns.train``; the scripts also run by path from this folder, as the original's README
writes them.
"""
