"""Fine-tuning (``train.py``): labelled data and GLUE tasks, the classifier module, the run."""
