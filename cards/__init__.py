"""Cards: dataset, judge and evaluation cards and their plots. Filled in by the cards issue."""
