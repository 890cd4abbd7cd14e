//! The mirror plugin's 1,000-object end-to-end time with hostile plugins (endless
//! loop, memory bomb, panic on every call, 10 MB of log output per call, deep
//! recursion) running beside it in the same namespace, against running alone and
//! against running beside as many well-behaved plugins (which see the same objects and
//! return at once, so that what tenancy costs and what hostility costs show apart);
//! rounds alternate. Run with `cargo bench -p kubewasm-tests --bench hostile`; prints
//! the figures BENCHMARKS.md quotes.

use std::sync::Arc;

use kubewasm::reconciler::Reconciler;
use kubewasm::sandbox::PluginOptions;
use kubewasm_tests::cpu_usage::CpuSeconds;
use kubewasm_tests::mirror_round::{
    Bench, Companion, Round, chosen_hostile, median, mirror_round, rounds,
};
use kubewasm_tests::plugins::{example_bytes, test_guest_bytes};

const OBJECTS: usize = 1_000;
const ROUNDS: usize = 5;

/// The rounds of one configuration.
#[derive(Default)]
struct Series(Vec<Round>);

impl Series {
    fn median(&self) -> f64 {
        median(self.0.iter().map(|round| round.elapsed).collect()).as_secs_f64()
    }

    fn mean_cpu(&self) -> CpuSeconds {
        let n = self.0.len() as f64;
        let sum =
            |part: fn(&CpuSeconds) -> f64| self.0.iter().map(|r| part(&r.cpu)).sum::<f64>() / n;
        CpuSeconds {
            api_server: sum(|cpu| cpu.api_server),
            etcd: sum(|cpu| cpu.etcd),
            host: sum(|cpu| cpu.host),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Bench {
        client,
        runtime,
        sandbox,
    } = Bench::new().await?;
    let load = |name: String, bytes: Vec<u8>| {
        let sandbox = &sandbox;
        async move {
            let (plugin, _) = sandbox.load(&name, bytes, PluginOptions::default()).await?;
            anyhow::Ok(Arc::new(plugin) as Arc<dyn Reconciler>)
        }
    };
    let mirror = load("configmap-mirror".into(), example_bytes("configmap-mirror")).await?;
    let chosen = chosen_hostile();
    let (mut hostile, mut well_behaved) = (Vec::new(), Vec::new());
    for &behaviour in &chosen {
        let name = format!("hostile-{behaviour}");
        hostile.push(Companion {
            reconciler: load(name.clone(), test_guest_bytes(&name)).await?,
            name,
        });
        well_behaved.push(Companion {
            reconciler: load("well-behaved".into(), test_guest_bytes("well-behaved")).await?,
            name: "well-behaved".into(),
        });
    }

    println!(
        "{OBJECTS} labelled ConfigMaps -> all mirrored by the WebAssembly mirror plugin: alone, \
         beside {n} well-behaved plugins, beside {n} hostile plugins ({}); default limits; \
         {} rounds each, alternating",
        chosen.join(", "),
        rounds(ROUNDS),
        n = chosen.len(),
    );
    let (mut alone, mut beside_good, mut beside_hostile) =
        (Series::default(), Series::default(), Series::default());
    for i in 0..rounds(ROUNDS) {
        let round =
            |companions| mirror_round(&client, &runtime, OBJECTS, mirror.clone(), companions);
        alone.0.push(round(&[]).await?);
        beside_good.0.push(round(&well_behaved).await?);
        beside_hostile.0.push(round(&hostile).await?);
        let secs = |series: &Series| series.0[i].elapsed.as_secs_f64();
        println!(
            "round {}: alone {:>6.2} s   beside well-behaved {:>6.2} s   beside hostile {:>6.2} s",
            i + 1,
            secs(&alone),
            secs(&beside_good),
            secs(&beside_hostile),
        );
    }
    for (name, series) in [
        ("alone", &alone),
        ("beside well-behaved plugins", &beside_good),
        ("beside hostile plugins", &beside_hostile),
    ] {
        let cpu = series.mean_cpu();
        println!(
            "{name:<28} median {:>5.2} s   CPU per round: {cpu} (total {:.2} s)",
            series.median(),
            cpu.total()
        );
    }
    println!(
        "ratio to alone: beside well-behaved {:.3}, beside hostile {:.3}; hostile to well-behaved {:.3}",
        beside_good.median() / alone.median(),
        beside_hostile.median() / alone.median(),
        beside_hostile.median() / beside_good.median(),
    );
    Ok(())
}
