"""The mechanism study (issue 14): does each credit method move its own target quantity on
held-out data, at what dose, and does any method change accuracy? See README.md.
"""
