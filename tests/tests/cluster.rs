//! Several workers: both receive work; a worker that stops heartbeating is marked down and new work
//! goes to the others.
use std::collections::BTreeSet;
use std::time::Duration;

use lamina_e2e::*;

#[test]
fn two_workers_both_receive_work_and_a_lost_one_is_avoided() {
    run(async {
        let mut cluster = Cluster::start(2)?;
        let c = cluster.client().await?;
        let workers = c.list_workers().await?;
        assert_eq!(workers.len(), 2);
        assert!(workers.iter().all(|w| w.state == "Up"), "{workers:?}");

        let mut names = Vec::new();
        for _ in 0..4 {
            let name = unique("spread");
            create_python(&c, &name, "def handler(e, c):\n    return 'ok'\n").await?;
            names.push(name);
        }
        let mut used = BTreeSet::new();
        for name in &names {
            let r = invoke(&c, name, "{}").await?;
            assert_eq!(json(&r), "ok", "{}", cluster.logs());
            used.insert(r.worker_id.clone());
        }
        let expected: BTreeSet<String> = cluster.worker_ids.iter().cloned().collect();
        assert_eq!(used, expected, "both workers get work");

        // Lose one worker: it is marked Down and invocations keep working on the other.
        cluster.workers[0].kill();
        let lost = cluster.worker_ids[0].clone();
        reap_worker_sandboxes(&lost);
        let mut down = false;
        for _ in 0..100 {
            let ws = c.list_workers().await?;
            if ws.iter().any(|w| w.worker_id == lost && w.state == "Down") {
                down = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(down, "worker {lost} never marked Down");
        for name in &names {
            let r = invoke(&c, name, "{}").await?;
            assert_eq!(json(&r), "ok");
            assert_eq!(r.worker_id, cluster.worker_ids[1]);
        }
        Ok(())
    })
}
