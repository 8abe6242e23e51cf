from facequeue.cli import app

app()
