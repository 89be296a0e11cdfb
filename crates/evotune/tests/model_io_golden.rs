//! θ0 of the default model against an independent implementation: HF transformers' own GGUF loader
//! (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=…)`, which dequantizes with the `gguf`
//! package and reverses llama.cpp's Q/K permutation itself). For every tensor we compare three
//! f64 reductions: Σx, Σ|x| and Σ (i mod 1009)·x (position-sensitive, so a row order that differs
//! from HF's — e.g. a missing or wrong un-permutation — changes it).
//!
//! The table below was produced by this Python (transformers 5.24.0, torch 2.15, f32):
//! ```python
//! import torch, numpy as np
//! from transformers import AutoModelForCausalLM
//! m = AutoModelForCausalLM.from_pretrained("~/.cache/evotune", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
//!                                          torch_dtype=torch.float32)
//! for name, t in m.state_dict().items():
//!     if name == "lm_head.weight": continue  # tied: the same tensor as embed_tokens
//!     x = t.detach().reshape(-1).double().numpy(); w = (np.arange(x.size) % 1009).astype(np.float64)
//!     print(name, float(x.sum()), float(np.abs(x).sum()), float((w * x).sum()))
//! ```

use std::path::PathBuf;

use evotune::model::loader::load_gguf_weights;

fn default_model() -> Option<PathBuf> {
    let p = std::env::var_os("EVOTUNE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf"));
    if p.is_file() {
        Some(p)
    } else {
        println!("SKIP: default model not found at {} (set EVOTUNE_MODEL)", p.display());
        None
    }
}

#[test]
fn default_model_theta0_matches_transformers() {
    let Some(path) = default_model() else { return };
    let (_, theta0, params) = load_gguf_weights(&path).unwrap();
    assert_eq!(GOLDEN.len(), params.layout().len());
    let mut worst = (0.0f64, "");
    for &(name, sum, abs_sum, weighted) in GOLDEN {
        let x = params.get(name).unwrap_or_else(|| panic!("{name} missing from our layout"));
        let ours_sum: f64 = x.iter().map(|&v| v as f64).sum();
        let ours_abs: f64 = x.iter().map(|&v| (v as f64).abs()).sum();
        let ours_weighted: f64 = x.iter().enumerate().map(|(i, &v)| (i % 1009) as f64 * v as f64).sum();
        // Same f32 values summed in a different order (numpy's pairwise sum): the reductions agree
        // to about 1e-12 of Σ|x| (weighted: 1009·Σ|x|); a single changed element of a Q4 tensor
        // moves them by ~1e-6 of Σ|x| or more.
        let tol = 1e-9 * abs_sum + 1e-9;
        let errs = [
            (ours_sum - sum).abs() / tol,
            (ours_abs - abs_sum).abs() / tol,
            (ours_weighted - weighted).abs() / (1009.0 * tol),
        ];
        let e = errs.iter().cloned().fold(0.0, f64::max);
        if e > worst.0 {
            worst = (e, name);
        }
        assert!(
            e <= 1.0,
            "{name}: ours (Σx {ours_sum}, Σ|x| {ours_abs}, Σw·x {ours_weighted}) vs transformers ({sum}, {abs_sum}, {weighted})"
        );
    }
    println!("worst tensor {:?}: {:.3} of the tolerance", worst.1, worst.0);

    // Not vacuous: the file's own (permuted) row order fails the weighted check by far.
    let file_q = theta0.gguf().unwrap().dequantize("blk.0.attn_q.weight").unwrap();
    let &(_, _, abs_sum, weighted) = GOLDEN.iter().find(|g| g.0 == "model.layers.0.self_attn.q_proj.weight").unwrap();
    let file_weighted: f64 = file_q.iter().enumerate().map(|(i, &v)| (i % 1009) as f64 * v as f64).sum();
    let off = (file_weighted - weighted).abs() / (1009.0 * (1e-9 * abs_sum + 1e-9));
    println!("permuted file order: weighted sum off by {off:.0}x the tolerance");
    assert!(off > 1000.0);
}

const GOLDEN: &[(&str, f64, f64, f64)] = &[
    ("model.embed_tokens.weight", -15353.04449415207, 2802153.619805813, -7804811.753322601),
    ("model.layers.0.self_attn.q_proj.weight", 59.22322082519531, 63395.39872741699, 31941.975143432617),
    ("model.layers.0.self_attn.k_proj.weight", 26.937057495117188, 29794.78126525879, 24273.924285888672),
    ("model.layers.0.self_attn.v_proj.weight", 4.793846130371094, 3828.7508697509766, 6407.188255310059),
    ("model.layers.0.self_attn.o_proj.weight", 22.637935638427734, 15579.117626190186, 8551.943222045898),
    ("model.layers.0.mlp.gate_proj.weight", 330.11053466796875, 129929.85931396484, 120543.33949279785),
    ("model.layers.0.mlp.up_proj.weight", -149.01732635498047, 133481.80757904053, -119494.30626678467),
    ("model.layers.0.mlp.down_proj.weight", 150.63577270507812, 128458.06286621094, 89541.28670501709),
    ("model.layers.0.input_layernorm.weight", 0.6129436492919922, 15.815359115600586, 190.85974311828613),
    ("model.layers.0.post_attention_layernorm.weight", 61.69384765625, 61.69384765625, 17598.9814453125),
    ("model.layers.1.self_attn.q_proj.weight", -40.5765380859375, 63366.52600097656, -20670.12338256836),
    ("model.layers.1.self_attn.k_proj.weight", -99.16607666015625, 23956.279418945312, -61692.65151977539),
    ("model.layers.1.self_attn.v_proj.weight", -46.151580810546875, 10732.041900634766, -17139.238540649414),
    ("model.layers.1.self_attn.o_proj.weight", 49.469581604003906, 35281.02645111084, 27111.658180236816),
    ("model.layers.1.mlp.gate_proj.weight", -162.2104034423828, 143169.51795959473, -63077.28405761719),
    ("model.layers.1.mlp.up_proj.weight", 35.037811279296875, 126959.96957397461, -63853.43798828125),
    ("model.layers.1.mlp.down_proj.weight", 252.17144775390625, 127844.66528320312, 175541.86585235596),
    ("model.layers.1.input_layernorm.weight", 91.16096115112305, 91.17958450317383, 26227.963718414307),
    ("model.layers.1.post_attention_layernorm.weight", 103.24039697647095, 103.24131536483765, 29591.53115797043),
    ("model.layers.2.self_attn.q_proj.weight", -67.32742309570312, 58854.21109008789, 3755.4383087158203),
    ("model.layers.2.self_attn.k_proj.weight", -51.27265930175781, 22949.27980041504, -2940.453094482422),
    ("model.layers.2.self_attn.v_proj.weight", 28.525909423828125, 9754.33088684082, 12388.79753112793),
    ("model.layers.2.self_attn.o_proj.weight", 48.961273193359375, 32795.80764770508, 34490.03868865967),
    ("model.layers.2.mlp.gate_proj.weight", -1445.0694274902344, 139529.3059387207, -738309.2895736694),
    ("model.layers.2.mlp.up_proj.weight", -8.004013061523438, 128165.17933654785, -27648.118927001953),
    ("model.layers.2.mlp.down_proj.weight", 70.23202514648438, 127100.3989868164, 35639.43524932861),
    ("model.layers.2.input_layernorm.weight", 132.91610717773438, 132.92471313476562, 38101.91714477539),
    ("model.layers.2.post_attention_layernorm.weight", 110.32073593139648, 110.32073593139648, 31677.415378570557),
    ("model.layers.3.self_attn.q_proj.weight", -96.36239624023438, 54389.01916503906, -54388.93724822998),
    ("model.layers.3.self_attn.k_proj.weight", -52.82200622558594, 21054.364334106445, 16977.48387145996),
    ("model.layers.3.self_attn.v_proj.weight", -32.29008483886719, 12484.509628295898, -37432.46089172363),
    ("model.layers.3.self_attn.o_proj.weight", 38.244873046875, 39575.56573486328, 47891.47834777832),
    ("model.layers.3.mlp.gate_proj.weight", -78.73780822753906, 139925.96116638184, -8954.897537231445),
    ("model.layers.3.mlp.up_proj.weight", -132.80682373046875, 130220.35372924805, -92120.51301574707),
    ("model.layers.3.mlp.down_proj.weight", 81.66989135742188, 129601.88104248047, 43959.96521759033),
    ("model.layers.3.input_layernorm.weight", 166.85116577148438, 166.85116577148438, 47791.91323852539),
    ("model.layers.3.post_attention_layernorm.weight", 109.79030799865723, 109.79030799865723, 31496.57594871521),
    ("model.layers.4.self_attn.q_proj.weight", -54.591064453125, 56582.241943359375, 30617.119903564453),
    ("model.layers.4.self_attn.k_proj.weight", -125.6343994140625, 20812.052337646484, -82781.06629943848),
    ("model.layers.4.self_attn.v_proj.weight", -40.38819885253906, 12970.058456420898, -9342.08186340332),
    ("model.layers.4.self_attn.o_proj.weight", -1.5327911376953125, 40386.26788330078, 12443.221694946289),
    ("model.layers.4.mlp.gate_proj.weight", -1047.5544891357422, 138434.94468688965, -476374.2483062744),
    ("model.layers.4.mlp.up_proj.weight", -112.61759948730469, 129491.45100402832, -87744.67683410645),
    ("model.layers.4.mlp.down_proj.weight", -266.8030700683594, 127390.98147583008, -75547.82061004639),
    ("model.layers.4.input_layernorm.weight", 155.18055725097656, 155.18272399902344, 44506.05125427246),
    ("model.layers.4.post_attention_layernorm.weight", 114.736403465271, 114.736741065979, 32896.98613834381),
    ("model.layers.5.self_attn.q_proj.weight", 13.291915893554688, 52716.79194641113, 33923.757930755615),
    ("model.layers.5.self_attn.k_proj.weight", -57.14201354980469, 19361.86036682129, -40553.37875366211),
    ("model.layers.5.self_attn.v_proj.weight", 3.9440155029296875, 13527.674880981445, 2239.0503692626953),
    ("model.layers.5.self_attn.o_proj.weight", 27.622215270996094, 39103.72261810303, 53230.78309631348),
    ("model.layers.5.mlp.gate_proj.weight", -922.0246734619141, 136885.8418121338, -514487.5721282959),
    ("model.layers.5.mlp.up_proj.weight", 263.681884765625, 130214.20428466797, 154418.16622924805),
    ("model.layers.5.mlp.down_proj.weight", 21.782142639160156, 127540.6024093628, -19612.081260681152),
    ("model.layers.5.input_layernorm.weight", 146.775390625, 146.775390625, 41949.42822265625),
    ("model.layers.5.post_attention_layernorm.weight", 119.69677543640137, 119.69677543640137, 34336.76246833801),
    ("model.layers.6.self_attn.q_proj.weight", -52.6650390625, 53398.829986572266, -69891.93251800537),
    ("model.layers.6.self_attn.k_proj.weight", 68.07211303710938, 20096.387481689453, -8697.776611328125),
    ("model.layers.6.self_attn.v_proj.weight", 14.943618774414062, 13921.911331176758, 25278.802780151367),
    ("model.layers.6.self_attn.o_proj.weight", 120.41703033447266, 40809.19747161865, 88746.23336029053),
    ("model.layers.6.mlp.gate_proj.weight", -293.10400390625, 136061.97454833984, -185360.01309204102),
    ("model.layers.6.mlp.up_proj.weight", 456.00518798828125, 132960.2120361328, 270413.7916107178),
    ("model.layers.6.mlp.down_proj.weight", 215.5755844116211, 130649.12329864502, 69887.68334960938),
    ("model.layers.6.input_layernorm.weight", 143.11176300048828, 143.11479949951172, 40958.619621276855),
    ("model.layers.6.post_attention_layernorm.weight", 115.03413105010986, 115.03447246551514, 33052.7796125412),
    ("model.layers.7.self_attn.q_proj.weight", -26.595428466796875, 47604.23973083496, -48253.18276977539),
    ("model.layers.7.self_attn.k_proj.weight", -47.49678039550781, 16738.010009765625, -28380.264854431152),
    ("model.layers.7.self_attn.v_proj.weight", 61.694580078125, 14284.74038696289, 55405.38607788086),
    ("model.layers.7.self_attn.o_proj.weight", 36.52758026123047, 41327.43793487549, -7517.538276672363),
    ("model.layers.7.mlp.gate_proj.weight", -814.0233688354492, 134180.07514190674, -418513.1068649292),
    ("model.layers.7.mlp.up_proj.weight", -318.695556640625, 134780.72171020508, -227045.3440093994),
    ("model.layers.7.mlp.down_proj.weight", -198.9853515625, 131425.78338623047, -98460.48640441895),
    ("model.layers.7.input_layernorm.weight", 174.502197265625, 174.595458984375, 49873.730224609375),
    ("model.layers.7.post_attention_layernorm.weight", 119.31790542602539, 119.31790542602539, 34237.8099937439),
    ("model.layers.8.self_attn.q_proj.weight", -89.95585250854492, 49583.437397003174, -46081.80640792847),
    ("model.layers.8.self_attn.k_proj.weight", 89.44828033447266, 17324.573356628418, 40473.08654022217),
    ("model.layers.8.self_attn.v_proj.weight", -0.047607421875, 13912.773315429688, 14122.885818481445),
    ("model.layers.8.self_attn.o_proj.weight", -56.39234924316406, 40048.60971069336, -51587.88282775879),
    ("model.layers.8.mlp.gate_proj.weight", 162.0631866455078, 131801.48973083496, 85102.14895629883),
    ("model.layers.8.mlp.up_proj.weight", -115.68772888183594, 137308.89503479004, -56541.877365112305),
    ("model.layers.8.mlp.down_proj.weight", 64.09736633300781, 132761.1590270996, 49904.25550842285),
    ("model.layers.8.input_layernorm.weight", 157.60888671875, 157.60888671875, 45121.15380859375),
    ("model.layers.8.post_attention_layernorm.weight", 124.12386322021484, 124.12564849853516, 35678.33420562744),
    ("model.layers.9.self_attn.q_proj.weight", 87.51844787597656, 53921.40557861328, 115545.31282806396),
    ("model.layers.9.self_attn.k_proj.weight", -13.365478515625, 18634.428802490234, 17419.518173217773),
    ("model.layers.9.self_attn.v_proj.weight", 42.74171447753906, 12928.21745300293, 15095.953811645508),
    ("model.layers.9.self_attn.o_proj.weight", -125.5267105102539, 38736.41820526123, -93068.1332321167),
    ("model.layers.9.mlp.gate_proj.weight", -219.46847534179688, 127596.49301147461, -61418.9970703125),
    ("model.layers.9.mlp.up_proj.weight", 31.323318481445312, 140837.46479797363, 59676.4248046875),
    ("model.layers.9.mlp.down_proj.weight", 31.033103942871094, 136302.72792816162, 59892.195053100586),
    ("model.layers.9.input_layernorm.weight", 139.74169921875, 139.74169921875, 40123.845703125),
    ("model.layers.9.post_attention_layernorm.weight", 129.9982566833496, 129.9982566833496, 37374.17267227173),
    ("model.layers.10.self_attn.q_proj.weight", -138.7449951171875, 56280.53436279297, -36982.209228515625),
    ("model.layers.10.self_attn.k_proj.weight", -65.61541748046875, 19736.26190185547, -37810.20620727539),
    ("model.layers.10.self_attn.v_proj.weight", -9.1273193359375, 13951.743347167969, -1669.3158416748047),
    ("model.layers.10.self_attn.o_proj.weight", 115.68700408935547, 41650.62258148193, 50401.95135498047),
    ("model.layers.10.mlp.gate_proj.weight", -125.82160949707031, 126051.24949645996, -26392.824981689453),
    ("model.layers.10.mlp.up_proj.weight", -87.81619262695312, 141229.7926940918, -147538.26374816895),
    ("model.layers.10.mlp.down_proj.weight", -216.8679428100586, 137330.5690383911, -115743.22875976562),
    ("model.layers.10.input_layernorm.weight", 141.3955078125, 141.3955078125, 40501.5927734375),
    ("model.layers.10.post_attention_layernorm.weight", 133.23923778533936, 133.23923778533936, 38297.470883369446),
    ("model.layers.11.self_attn.q_proj.weight", -73.31550598144531, 55732.62693786621, -63606.65901184082),
    ("model.layers.11.self_attn.k_proj.weight", -11.528793334960938, 19887.671951293945, 40231.082107543945),
    ("model.layers.11.self_attn.v_proj.weight", -27.476165771484375, 13889.793731689453, 6023.9324951171875),
    ("model.layers.11.self_attn.o_proj.weight", -14.702003479003906, 41271.91753387451, -33517.13655090332),
    ("model.layers.11.mlp.gate_proj.weight", 95.9473876953125, 122629.54502868652, 87313.05066680908),
    ("model.layers.11.mlp.up_proj.weight", 50.10548400878906, 141046.529586792, -41119.09211730957),
    ("model.layers.11.mlp.down_proj.weight", 84.14506530761719, 137340.2024078369, 30560.545440673828),
    ("model.layers.11.input_layernorm.weight", 137.1572265625, 137.1572265625, 39377.72705078125),
    ("model.layers.11.post_attention_layernorm.weight", 139.8947310447693, 139.8948197364807, 40247.33225297928),
    ("model.layers.12.self_attn.q_proj.weight", -12.668891906738281, 52507.9048538208, -53517.166915893555),
    ("model.layers.12.self_attn.k_proj.weight", -19.033187866210938, 18875.562789916992, -848.1373596191406),
    ("model.layers.12.self_attn.v_proj.weight", 61.764862060546875, 14762.243591308594, 11268.424713134766),
    ("model.layers.12.self_attn.o_proj.weight", -72.34426879882812, 41236.68835449219, 5803.053894042969),
    ("model.layers.12.mlp.gate_proj.weight", 428.9107208251953, 124449.4605255127, 147254.0547027588),
    ("model.layers.12.mlp.up_proj.weight", 126.54206848144531, 139593.5084991455, 48019.30555725098),
    ("model.layers.12.mlp.down_proj.weight", 145.06800842285156, 134791.43049621582, 100835.82843017578),
    ("model.layers.12.input_layernorm.weight", 161.914794921875, 161.914794921875, 46451.65185546875),
    ("model.layers.12.post_attention_layernorm.weight", 134.4603328704834, 134.4603328704834, 38733.92392158508),
    ("model.layers.13.self_attn.q_proj.weight", 77.19485473632812, 57725.71420288086, 19216.900756835938),
    ("model.layers.13.self_attn.k_proj.weight", 61.78346252441406, 19783.278091430664, 47601.63285827637),
    ("model.layers.13.self_attn.v_proj.weight", -5.2712249755859375, 14261.519485473633, 5096.463470458984),
    ("model.layers.13.self_attn.o_proj.weight", 103.5438003540039, 40800.51291656494, 65521.479316711426),
    ("model.layers.13.mlp.gate_proj.weight", 839.7532653808594, 128024.80014038086, 359970.26459503174),
    ("model.layers.13.mlp.up_proj.weight", 276.1902160644531, 135537.99896240234, 109605.0011138916),
    ("model.layers.13.mlp.down_proj.weight", 115.40028381347656, 128425.21864318848, 7372.718109130859),
    ("model.layers.13.input_layernorm.weight", 166.59228515625, 166.59228515625, 47978.948974609375),
    ("model.layers.13.post_attention_layernorm.weight", 138.3003273010254, 138.3003273010254, 39912.63459396362),
    ("model.layers.14.self_attn.q_proj.weight", 227.68730926513672, 47217.47142791748, 94453.95722198486),
    ("model.layers.14.self_attn.k_proj.weight", 16.539344787597656, 16009.299263000488, 26931.84051513672),
    ("model.layers.14.self_attn.v_proj.weight", -52.73753356933594, 15471.787796020508, -46695.67225646973),
    ("model.layers.14.self_attn.o_proj.weight", 4.6943359375, 43503.14161682129, -1770.468765258789),
    ("model.layers.14.mlp.gate_proj.weight", 122.89456939697266, 126794.57401275635, 33771.90003204346),
    ("model.layers.14.mlp.up_proj.weight", 21.871185302734375, 135106.10507202148, 53671.59698486328),
    ("model.layers.14.mlp.down_proj.weight", -257.8614196777344, 127612.18566894531, -134940.3776702881),
    ("model.layers.14.input_layernorm.weight", 203.502685546875, 203.502685546875, 58747.712646484375),
    ("model.layers.14.post_attention_layernorm.weight", 134.07289505004883, 134.07358932495117, 38700.66946029663),
    ("model.layers.15.self_attn.q_proj.weight", 5.641868591308594, 47839.41907501221, -20563.510711669922),
    ("model.layers.15.self_attn.k_proj.weight", 76.77465057373047, 16185.17877960205, 29424.230583190918),
    ("model.layers.15.self_attn.v_proj.weight", 87.05805969238281, 15131.80647277832, 32984.90476989746),
    ("model.layers.15.self_attn.o_proj.weight", 50.92701721191406, 43072.43649291992, 35053.661682128906),
    ("model.layers.15.mlp.gate_proj.weight", 297.83402252197266, 129786.99166107178, 170712.90663146973),
    ("model.layers.15.mlp.up_proj.weight", 151.22958374023438, 134933.43966674805, 143751.9167175293),
    ("model.layers.15.mlp.down_proj.weight", 3.4424514770507812, 125980.69368743896, 12274.23723602295),
    ("model.layers.15.input_layernorm.weight", 194.353271484375, 194.353271484375, 55986.401123046875),
    ("model.layers.15.post_attention_layernorm.weight", 135.8479824066162, 135.8479824066162, 39249.76057624817),
    ("model.layers.16.self_attn.q_proj.weight", -28.03561782836914, 53894.65504837036, 319.2329635620117),
    ("model.layers.16.self_attn.k_proj.weight", 6.6024017333984375, 19125.300338745117, 32302.695404052734),
    ("model.layers.16.self_attn.v_proj.weight", 81.26889038085938, 14509.029998779297, 63099.34265136719),
    ("model.layers.16.self_attn.o_proj.weight", 47.50861358642578, 42100.16202545166, 8259.853065490723),
    ("model.layers.16.mlp.gate_proj.weight", 405.98512268066406, 128774.80107116699, 213059.29467773438),
    ("model.layers.16.mlp.up_proj.weight", 1.12603759765625, 136880.45669555664, -93841.40756225586),
    ("model.layers.16.mlp.down_proj.weight", -240.7591552734375, 128255.02526855469, -120077.11199951172),
    ("model.layers.16.input_layernorm.weight", 168.985595703125, 168.985595703125, 48621.12109375),
    ("model.layers.16.post_attention_layernorm.weight", 127.30167388916016, 127.30167388916016, 36758.559745788574),
    ("model.layers.17.self_attn.q_proj.weight", -259.658748626709, 43885.23952102661, -123866.11288452148),
    ("model.layers.17.self_attn.k_proj.weight", 77.54883575439453, 14329.000648498535, 53165.30539703369),
    ("model.layers.17.self_attn.v_proj.weight", -82.91609191894531, 15701.060745239258, -55840.01689147949),
    ("model.layers.17.self_attn.o_proj.weight", 33.77553939819336, 42310.117221832275, -288.8086585998535),
    ("model.layers.17.mlp.gate_proj.weight", -212.6943588256836, 127634.23706817627, -168546.71761322021),
    ("model.layers.17.mlp.up_proj.weight", -240.7369384765625, 137921.85961914062, -169929.10005187988),
    ("model.layers.17.mlp.down_proj.weight", 114.11135864257812, 129722.56314086914, 65399.150299072266),
    ("model.layers.17.input_layernorm.weight", 211.2763671875, 211.2763671875, 60956.0185546875),
    ("model.layers.17.post_attention_layernorm.weight", 120.9598159790039, 120.9601058959961, 34902.65843963623),
    ("model.layers.18.self_attn.q_proj.weight", -1.6830940246582031, 42718.17614364624, -16075.577404022217),
    ("model.layers.18.self_attn.k_proj.weight", 24.48889923095703, 13447.380348205566, 33005.69961166382),
    ("model.layers.18.self_attn.v_proj.weight", -56.34190368652344, 14954.882858276367, -15743.306854248047),
    ("model.layers.18.self_attn.o_proj.weight", 139.04671478271484, 43432.01361846924, 9995.897102355957),
    ("model.layers.18.mlp.gate_proj.weight", 106.08159637451172, 126111.38515472412, 74402.44650268555),
    ("model.layers.18.mlp.up_proj.weight", 18.637130737304688, 135886.99559020996, 5784.262512207031),
    ("model.layers.18.mlp.down_proj.weight", 71.86624908447266, 128009.3052444458, -9623.37100982666),
    ("model.layers.18.input_layernorm.weight", 223.13623046875, 223.13623046875, 64137.5478515625),
    ("model.layers.18.post_attention_layernorm.weight", 120.97849655151367, 120.97849655151367, 34870.81552505493),
    ("model.layers.19.self_attn.q_proj.weight", 108.01278686523438, 43376.00528717041, 108672.16605377197),
    ("model.layers.19.self_attn.k_proj.weight", 65.52536010742188, 14432.902740478516, 55987.81645965576),
    ("model.layers.19.self_attn.v_proj.weight", -32.718109130859375, 19505.270446777344, -22570.09764099121),
    ("model.layers.19.self_attn.o_proj.weight", 97.43568420410156, 48998.62516784668, 50107.39922332764),
    ("model.layers.19.mlp.gate_proj.weight", 134.74896240234375, 126901.59315490723, 189130.37609100342),
    ("model.layers.19.mlp.up_proj.weight", 197.96829223632812, 136353.82821655273, 52182.70782470703),
    ("model.layers.19.mlp.down_proj.weight", -241.79649353027344, 128681.41917419434, -75922.41105651855),
    ("model.layers.19.input_layernorm.weight", 174.69482421875, 174.69482421875, 50253.65869140625),
    ("model.layers.19.post_attention_layernorm.weight", 126.6638412475586, 126.6638412475586, 36465.26917266846),
    ("model.layers.20.self_attn.q_proj.weight", 28.6219482421875, 43778.08241271973, -29382.307846069336),
    ("model.layers.20.self_attn.k_proj.weight", 69.37551879882812, 13101.953063964844, 15914.649208068848),
    ("model.layers.20.self_attn.v_proj.weight", 60.39289855957031, 17513.361740112305, 15179.745620727539),
    ("model.layers.20.self_attn.o_proj.weight", 149.40208435058594, 47693.81053161621, 52861.04975891113),
    ("model.layers.20.mlp.gate_proj.weight", -128.04324340820312, 123349.76495361328, -48472.109550476074),
    ("model.layers.20.mlp.up_proj.weight", 182.96890258789062, 138498.25479125977, 24494.36196899414),
    ("model.layers.20.mlp.down_proj.weight", -34.099639892578125, 131569.52758789062, 2917.211929321289),
    ("model.layers.20.input_layernorm.weight", 203.53564453125, 203.53564453125, 58658.10498046875),
    ("model.layers.20.post_attention_layernorm.weight", 127.07065963745117, 127.07191848754883, 36549.069553375244),
    ("model.layers.21.self_attn.q_proj.weight", -171.11100006103516, 44587.51718902588, -54421.285972595215),
    ("model.layers.21.self_attn.k_proj.weight", 3.68438720703125, 14022.499252319336, -217.9950408935547),
    ("model.layers.21.self_attn.v_proj.weight", 4.2510833740234375, 17926.137649536133, 7662.194808959961),
    ("model.layers.21.self_attn.o_proj.weight", -128.46179962158203, 47366.277168273926, -44579.19921875),
    ("model.layers.21.mlp.gate_proj.weight", -628.9667129516602, 125758.73085784912, -375937.68968200684),
    ("model.layers.21.mlp.up_proj.weight", 250.50193786621094, 139702.24201965332, 48712.61262512207),
    ("model.layers.21.mlp.down_proj.weight", 166.11251831054688, 133623.28314208984, 14974.074600219727),
    ("model.layers.21.input_layernorm.weight", 190.26806640625, 190.26806640625, 54785.08154296875),
    ("model.layers.21.post_attention_layernorm.weight", 143.15941333770752, 143.15943431854248, 41228.32475948334),
    ("model.layers.22.self_attn.q_proj.weight", -39.817893981933594, 44713.83200073242, -52870.49024581909),
    ("model.layers.22.self_attn.k_proj.weight", -13.66265869140625, 14489.762664794922, 6592.00439453125),
    ("model.layers.22.self_attn.v_proj.weight", -7.1619110107421875, 19087.22853088379, 16940.01641845703),
    ("model.layers.22.self_attn.o_proj.weight", -5.237953186035156, 50171.71739959717, -21296.017082214355),
    ("model.layers.22.mlp.gate_proj.weight", -1053.454360961914, 123876.73474121094, -527997.9997634888),
    ("model.layers.22.mlp.up_proj.weight", -53.25325012207031, 141650.02015686035, -20499.891220092773),
    ("model.layers.22.mlp.down_proj.weight", -188.27157592773438, 135569.76150512695, -19916.233032226562),
    ("model.layers.22.input_layernorm.weight", 190.06689453125, 190.06689453125, 54633.3232421875),
    ("model.layers.22.post_attention_layernorm.weight", 142.63625729084015, 142.63625729084015, 41060.176684737206),
    ("model.layers.23.self_attn.q_proj.weight", 10.399162292480469, 40289.50946807861, 925.192008972168),
    ("model.layers.23.self_attn.k_proj.weight", -67.55171966552734, 12471.481559753418, -42585.50279998779),
    ("model.layers.23.self_attn.v_proj.weight", -99.19047546386719, 20869.473403930664, -29473.11167907715),
    ("model.layers.23.self_attn.o_proj.weight", -104.6516342163086, 61268.27820587158, -54675.2463684082),
    ("model.layers.23.mlp.gate_proj.weight", -1058.197738647461, 124280.48669433594, -524109.030960083),
    ("model.layers.23.mlp.up_proj.weight", 60.61488342285156, 144099.15077209473, 40848.31050109863),
    ("model.layers.23.mlp.down_proj.weight", 13.238754272460938, 137515.04537963867, 44953.3258972168),
    ("model.layers.23.input_layernorm.weight", 227.740234375, 227.740234375, 65829.75390625),
    ("model.layers.23.post_attention_layernorm.weight", 148.09177780151367, 148.09279251098633, 42520.47128677368),
    ("model.layers.24.self_attn.q_proj.weight", -11.520378112792969, 41531.59493255615, -39947.24592590332),
    ("model.layers.24.self_attn.k_proj.weight", 5.046150207519531, 11561.262153625488, 4941.479598999023),
    ("model.layers.24.self_attn.v_proj.weight", 102.49798583984375, 22448.846130371094, 18208.30874633789),
    ("model.layers.24.self_attn.o_proj.weight", 206.41517639160156, 53488.4852142334, 161582.02734375),
    ("model.layers.24.mlp.gate_proj.weight", 377.8040008544922, 126743.95640563965, 174226.68045043945),
    ("model.layers.24.mlp.up_proj.weight", 32.69209289550781, 145786.351852417, -56443.79081726074),
    ("model.layers.24.mlp.down_proj.weight", -280.59393310546875, 140195.41033935547, -152141.16934204102),
    ("model.layers.24.input_layernorm.weight", 208.1142578125, 208.1142578125, 59855.4638671875),
    ("model.layers.24.post_attention_layernorm.weight", 161.46287590265274, 161.46290534734726, 46439.41245764494),
    ("model.layers.25.self_attn.q_proj.weight", 102.55094909667969, 46209.80990600586, 57622.21183013916),
    ("model.layers.25.self_attn.k_proj.weight", 16.607154846191406, 14318.668006896973, -24756.632110595703),
    ("model.layers.25.self_attn.v_proj.weight", 15.549468994140625, 21704.974822998047, 5619.564666748047),
    ("model.layers.25.self_attn.o_proj.weight", -78.83808898925781, 55788.85804748535, -33149.09129333496),
    ("model.layers.25.mlp.gate_proj.weight", 255.3536376953125, 127460.83853149414, 126832.24870300293),
    ("model.layers.25.mlp.up_proj.weight", 165.70822143554688, 146263.79208374023, 196367.99394226074),
    ("model.layers.25.mlp.down_proj.weight", -190.8517303466797, 142404.05099487305, -82349.45542907715),
    ("model.layers.25.input_layernorm.weight", 204.61083984375, 204.61083984375, 58755.07080078125),
    ("model.layers.25.post_attention_layernorm.weight", 171.19361209869385, 171.19408321380615, 49242.00410747528),
    ("model.layers.26.self_attn.q_proj.weight", -27.84885025024414, 40943.452686309814, -40077.4962310791),
    ("model.layers.26.self_attn.k_proj.weight", -40.73719787597656, 12599.201675415039, -21316.855895996094),
    ("model.layers.26.self_attn.v_proj.weight", -81.54205322265625, 23680.07501220703, -22616.432373046875),
    ("model.layers.26.self_attn.o_proj.weight", -4.9168243408203125, 60338.58387756348, 18548.39324951172),
    ("model.layers.26.mlp.gate_proj.weight", 175.8832550048828, 126152.31468200684, 53439.85949707031),
    ("model.layers.26.mlp.up_proj.weight", -65.76383972167969, 146741.02070617676, 13051.056289672852),
    ("model.layers.26.mlp.down_proj.weight", 170.3780746459961, 142162.44647979736, 52988.062438964844),
    ("model.layers.26.input_layernorm.weight", 220.80712890625, 220.80712890625, 63371.90576171875),
    ("model.layers.26.post_attention_layernorm.weight", 175.42637252807617, 175.42637252807617, 50461.52292251587),
    ("model.layers.27.self_attn.q_proj.weight", 70.89448547363281, 42627.674896240234, 39835.15488433838),
    ("model.layers.27.self_attn.k_proj.weight", -71.51639556884766, 12699.63092803955, -38882.52829742432),
    ("model.layers.27.self_attn.v_proj.weight", 76.91152954101562, 22056.540313720703, 90323.6650390625),
    ("model.layers.27.self_attn.o_proj.weight", 54.33363342285156, 52450.09761047363, 110058.38273620605),
    ("model.layers.27.mlp.gate_proj.weight", -288.18682861328125, 124478.60729980469, -61417.27705383301),
    ("model.layers.27.mlp.up_proj.weight", -308.6359405517578, 148527.62129211426, -119018.47537231445),
    ("model.layers.27.mlp.down_proj.weight", 155.19171142578125, 142066.63723754883, 156991.75357055664),
    ("model.layers.27.input_layernorm.weight", 212.10546875, 212.10546875, 60663.5703125),
    ("model.layers.27.post_attention_layernorm.weight", 175.85498046875, 175.85498046875, 50570.84912109375),
    ("model.layers.28.self_attn.q_proj.weight", -8.709434509277344, 38037.488914489746, 22577.961585998535),
    ("model.layers.28.self_attn.k_proj.weight", 25.927886962890625, 11303.453643798828, -9843.553703308105),
    ("model.layers.28.self_attn.v_proj.weight", -31.12841796875, 24549.505859375, -10873.915100097656),
    ("model.layers.28.self_attn.o_proj.weight", -61.33734130859375, 58145.72927856445, 8447.117370605469),
    ("model.layers.28.mlp.gate_proj.weight", -769.2319946289062, 124192.60861206055, -385889.6374359131),
    ("model.layers.28.mlp.up_proj.weight", 84.08203125, 149891.47439575195, 33739.69270324707),
    ("model.layers.28.mlp.down_proj.weight", -160.7849578857422, 141113.88703918457, -171892.89389038086),
    ("model.layers.28.input_layernorm.weight", 223.91015625, 223.91015625, 64159.443359375),
    ("model.layers.28.post_attention_layernorm.weight", 175.34912109375, 175.34912109375, 50475.900390625),
    ("model.layers.29.self_attn.q_proj.weight", 191.08612442016602, 37141.59959793091, 106241.4377822876),
    ("model.layers.29.self_attn.k_proj.weight", 87.89241790771484, 11157.1625289917, 42832.04042816162),
    ("model.layers.29.self_attn.v_proj.weight", -23.565185546875, 24516.71484375, 26252.104736328125),
    ("model.layers.29.self_attn.o_proj.weight", 110.86758422851562, 57698.73474121094, 73005.47727966309),
    ("model.layers.29.mlp.gate_proj.weight", -891.8797302246094, 120996.70727539062, -516131.74435424805),
    ("model.layers.29.mlp.up_proj.weight", 305.73268127441406, 150058.30757141113, 157886.91065979004),
    ("model.layers.29.mlp.down_proj.weight", 49.83570861816406, 126250.91435241699, -61606.118728637695),
    ("model.layers.29.input_layernorm.weight", 237.76953125, 237.76953125, 68202.349609375),
    ("model.layers.29.post_attention_layernorm.weight", 196.283203125, 196.283203125, 56369.2265625),
    ("model.norm.weight", 1038.33203125, 1045.09765625, 298738.12109375),
];
