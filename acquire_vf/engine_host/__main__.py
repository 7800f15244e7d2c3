"""``python -m acquire_vf.engine_host ADDRESS``: the engine host process (see the package)."""

from acquire_vf.engine_host._serve import main

if __name__ == "__main__":
    main()
