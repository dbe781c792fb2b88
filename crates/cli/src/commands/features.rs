pub fn run() -> anyhow::Result<u8> {
    out!(
        "{}",
        serde_json::to_string_pretty(&berth_runtime::features::features())?
    );
    Ok(0)
}
