"""``python -m api.openapi``: print the document of the app's route table."""

import sys

from api.app import ROUTES
from api.openapi import build, render

sys.stdout.buffer.write(render(build(ROUTES)))
