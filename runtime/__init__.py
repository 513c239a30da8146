"""How work runs: tasks on joblib processes or a Dask cluster, progress bars, TensorFlow
imported quietly, and the command-line error path. Imports nothing above the ground floor."""
