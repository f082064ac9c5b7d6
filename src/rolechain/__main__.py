from rolechain.cli import main

# Guarded: worker processes of a local Dask cluster re-import the main module.
if __name__ == "__main__":
    main()
