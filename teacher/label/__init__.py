"""``mamakit label``: pseudo-labels at scale through Lightning ``Trainer.predict`` + a prediction writer."""
