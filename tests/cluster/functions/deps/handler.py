"""deps: a Python function with a dependency from PyPI (requirements.txt), so it needs an image built with it."""

import datetime

import humanize


def handle(req):
    return f"deps: {humanize.naturaltime(datetime.timedelta(days=3))}\n"
