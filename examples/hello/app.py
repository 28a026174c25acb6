# The walkthrough's example app (README "Walkthrough: your first hour"): the Flask app of
# the seed tutorial, answering with the pod's hostname and the image's version so requests
# through a Service show which replica answered. scripts/build-example-images.sh bakes it
# into the images hello:1.0 (HELLO_VERSION=v1) and hello:2.0 (HELLO_VERSION=v2).
import os
import socket

from flask import Flask

app = Flask(__name__)


@app.route('/')
def hello_world():
    version = os.environ.get('HELLO_VERSION', 'dev')
    return f'Hello from {socket.gethostname()} ({version})\n'


if __name__ == '__main__':
    app.run(host='0.0.0.0', port=5000)
