"""The hop between nodes: what crosses a border with a message, and how the receiving node checks it."""
