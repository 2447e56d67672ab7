"""``python -m mesh_actors`` is the ``mesh-actors`` command."""

from .cli import main

main()
