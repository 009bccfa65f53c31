"""Training scripts (train.py, restore.py, validate.py, weight_avg.py) and the modules they share.

A regular package so ``import train.<module>`` resolves to this folder also when a script is run
from inside it, where ``train.py`` itself would otherwise shadow the package.
"""
