"""From a video to signs: MediaPipe landmarks, cutting signs out, recognising them.

video.py          frames from OpenCV, landmarks from MediaPipe Holistic: (T, 543, 3)
segment.py        where a sign starts and ends in a stream of frames
extract_jobs.py   which recordings go where: folders, CSVs, the --dataset layout
extract.py        `extract`: videos -> Kaggle parquet files, a process per core
predict.py        `predict`: the top signs of recordings of any kind
live.py           `live`: a camera or a video, sign by sign
record.py         `record`: examples of one sign from a camera or a video, into a raw Kaggle folder
"""
