"""The calculator-lab program: configuration, topology model and the two deployment targets."""
