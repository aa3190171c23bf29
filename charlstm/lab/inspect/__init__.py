"""charlstm inspect: probe.py records a model over a text and scores its
units against the text's features (features.py); ablation.py holds units at
zero; view.py shows a unit in the terminal and on a page."""
