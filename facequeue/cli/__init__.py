"""The `facequeue` command, the composition root: it assembles the service's parts and is imported by none.

Each module holds one job: `serve` runs and supervises the processes, `admin` changes the database,
`tenants` manages tenants' webhook endpoints and secrets, `client`, `batch` and `collections` talk to a running service
with the Python client (facequeue-client), `demo` makes the demo's media. Commands import the parts they
run inside their bodies, so that starting one command (a worker, `keys list`) loads only what it uses.
"""

from __future__ import annotations

import typer

from facequeue.cli import admin, batch, client, collections, serve, tenants

# a crash's traceback shows no local variables: they may hold an API key or a secret
app = typer.Typer(
    help="facequeue: asynchronous face detection", no_args_is_help=True, pretty_exceptions_show_locals=False
)
# registered one by one, in the order `facequeue --help` lists them
for command in (
    admin.migrate,
    serve.api,
    serve.worker,
    serve.serve,
    admin.maintenance,
    admin.webhook_secret,
    admin.reap,
    client.detect,
    client.get,
    client.cancel,
    client.delete,
    batch.batch,
    collections.index,
    collections.search,
    client.demo,
):
    app.command()(command)
app.command("list")(client.list_tasks)  # `list` would shadow the builtin as a function's name
app.add_typer(admin.keys_app, name="keys")
app.add_typer(tenants.tenants_app, name="tenants")
app.add_typer(collections.collections_app, name="collections")
