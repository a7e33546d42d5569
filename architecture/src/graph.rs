//! Strongly connected components of a directed graph (Tarjan's algorithm, iterative
//! so that deep graphs cannot overflow the stack).

/// The components of the graph on nodes `0..nodes` with more than one node, each
/// sorted, in ascending order of their smallest node.
pub fn cycles(nodes: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut successors = vec![Vec::new(); nodes];
    for &(from, to) in edges {
        successors[from].push(to);
    }
    let mut state = Tarjan {
        successors,
        index: vec![None; nodes],
        low: vec![0; nodes],
        on_stack: vec![false; nodes],
        stack: Vec::new(),
        next: 0,
        components: Vec::new(),
    };
    for node in 0..nodes {
        if state.index[node].is_none() {
            state.visit(node);
        }
    }
    let mut components: Vec<Vec<usize>> = state
        .components
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|mut c| {
            c.sort_unstable();
            c
        })
        .collect();
    components.sort();
    components
}

struct Tarjan {
    successors: Vec<Vec<usize>>,
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan {
    fn open(&mut self, node: usize) {
        self.index[node] = Some(self.next);
        self.low[node] = self.next;
        self.next += 1;
        self.stack.push(node);
        self.on_stack[node] = true;
    }

    fn visit(&mut self, start: usize) {
        // (node, position of the next successor to look at)
        let mut work = vec![(start, 0usize)];
        self.open(start);
        while let Some(&mut (node, ref mut position)) = work.last_mut() {
            if let Some(&next) = self.successors[node].get(*position) {
                *position += 1;
                match self.index[next] {
                    None => {
                        self.open(next);
                        work.push((next, 0));
                    }
                    Some(index) if self.on_stack[next] => {
                        self.low[node] = self.low[node].min(index);
                    }
                    Some(_) => {}
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                self.low[parent] = self.low[parent].min(self.low[node]);
            }
            if Some(self.low[node]) == self.index[node] {
                self.close(node);
            }
        }
    }

    fn close(&mut self, root: usize) {
        let mut component = Vec::new();
        while let Some(member) = self.stack.pop() {
            self.on_stack[member] = false;
            component.push(member);
            if member == root {
                break;
            }
        }
        self.components.push(component);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_cycle_and_ignores_chains() {
        let edges = [
            (0, 1),
            (1, 2),
            (2, 0),
            (2, 3),
            (3, 4),
            (5, 6),
            (6, 5),
            (4, 4),
        ];
        assert_eq!(cycles(7, &edges), vec![vec![0, 1, 2], vec![5, 6]]);
    }

    #[test]
    fn a_chain_has_no_cycle() {
        assert!(cycles(3, &[(0, 1), (1, 2)]).is_empty());
    }
}
