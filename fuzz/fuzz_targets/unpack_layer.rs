//! Any byte string as a layer tar: the unpacker may fail, but nothing may appear
//! outside its destination directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parent = tempfile::tempdir().expect("tempdir");
    let dest = parent.path().join("dest");
    std::fs::create_dir(&dest).expect("dest");
    let _ = crio_core::storage::unpack::unpack_layer(data, &dest);
    let names: Vec<_> = std::fs::read_dir(parent.path())
        .expect("read parent")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["dest"], "an entry escaped the layer dir");
});
