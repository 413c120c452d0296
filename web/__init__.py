"""The local web page: a camera or an upload in the browser, signs recognised by the server.

limits.py    what the server accepts: frame and upload sizes, origins, sessions
routes.py    the page's files, /api/info, an upload and the live camera session
workspace.py the teach panel's examples on disk, in the raw Kaggle layout
training.py  training on the workspace in a process of its own: progress, cancel
teach.py     the teach panel's API over the workspace and the training
serve.py     `serve`: the FastAPI app (its state, its routes) and the command
index.html, app.js, teach.js, style.css   the page itself, the only files served
"""
