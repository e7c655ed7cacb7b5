"""`airscale soak`: hours of load with faults at random, and what it shows (availability, lost
work, memory growth). Pure decisions (`schedule`, `verdict`) apart from the parts that act
(`probe`, `faults`, `memory`, `runner`) and the report."""
