"""The local web page: a camera or an upload in the browser, signs recognised by the server.

limits.py    what the server accepts: frame and upload sizes, origins, sessions
serve.py     `serve`: the FastAPI app and its routes
index.html, app.js, style.css   the page itself, the only files served
"""
