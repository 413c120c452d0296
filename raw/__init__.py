"""The raw Kaggle layout (train.csv and one parquet file a sequence) and the way into HDF5.

kaggle.py    read and write the raw layout: one sequence, the sign map, train.csv
convert.py   raw layout -> GISLR HDF5 files (`prepare`), a process per core
"""
