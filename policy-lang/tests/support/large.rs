//! A generated policy set of `policies * rules_per_policy` rules of every kind, for the
//! scale test and the compile benchmark.

use std::fmt::Write as _;

pub fn policy_set(policies: usize, rules_per_policy: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for p in 0..policies {
        let mut y = String::new();
        let _ = writeln!(y, "policies:\n  - name: team{p}\n    select:\n      cgroups: [/kubepods.slice/team{p}/**]\n      namespaces: [team{p}]\n    mode: enforce\n    defaults: {{network: deny}}\n    rules:");
        for r in 0..rules_per_policy {
            let id = p * rules_per_policy + r;
            let _ = writeln!(
                y,
                "      - name: r{r}\n        severity: high\n        tags: [T1059]"
            );
            match r % 6 {
                0 => {
                    let _ = writeln!(y, "        action: deny\n        file: {{path: /srv/app{id}/secrets/key{r}.pem, ops: [read, write], except_from: [/usr/bin/app{p}]}}");
                }
                1 => {
                    let _ = writeln!(y, "        action: deny\n        file: {{path: /var/lib/svc{id}/**, ops: [write, delete]}}");
                }
                2 => {
                    let _ = writeln!(y, "        action: kill\n        exec: {{path: /opt/tool{id}/bin/*, ancestor: [/usr/sbin/nginx]}}");
                }
                3 => {
                    let (a, b) = ((id / 256) % 256, id % 256);
                    let _ = writeln!(y, "        action: allow\n        network: {{ops: [connect], cidr: [10.{a}.{b}.0/24], ports: [443, 8000-8999]}}");
                }
                4 => {
                    let _ = writeln!(y, "        action: deny\n        file: {{path: /data/team{p}/*/export{r}/*.csv, ops: [read]}}");
                }
                _ => {
                    let _ = writeln!(y, "        action: audit\n        kernel: {{ops: [mount, ptrace], from: [/usr/bin/tool{id}]}}");
                }
            }
        }
        files.push((format!("team{p}.yaml"), y));
    }
    files
}
